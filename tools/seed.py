"""Fill an empty database with realistic TraceHub data at revision 002, the state production is in.

    PGPASSWORD=... python -m tools.seed --host 127.0.0.1 --port 55432 --user tracehub --dbname tracehub
    PGPASSWORD=... python -m tools.seed ... --scale 1796 --seed 8     # about 2.5 million rows, about a minute

``seed(conn, scale, seed)`` migrates the empty database to revision 002 with Alembic, then fills
the nine tenant tables with set-based SQL (one ``INSERT ... SELECT generate_series`` per table, so
millions of rows build in seconds, not hours). Scale 1 gives the production figures of the sprint
plan: 45 users, 23 shipments, 89 documents and proportionate rows elsewhere. ``scale`` multiplies
every per-shipment table (users stay 45). Every enum value is used, nullable columns hold NULLs,
JSONB payloads and non-ASCII names are present, and everything (ids, timestamps, choices) is derived
from the row number and ``seed``: the same seed always gives the same data.

The password comes from ``PGPASSWORD`` only, never from the command line.
"""

# The en dashes in names are real data, not typos.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
ALEMBIC_DIR = PROJECT_DIR / "alembic"
if str(PROJECT_DIR / ".collections") not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR / ".collections"))

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect  # noqa: E402

SEED_REVISION = "002"
TENANT_TABLES = (
    "users",
    "shipments",
    "documents",
    "products",
    "parties",
    "origins",
    "container_events",
    "notifications",
    "audit_logs",
)
USERS = 45
# Rows per scale unit of the per-shipment tables (scale 1 = production figures of the sprint plan).
PER_SCALE = {
    "shipments": 23,
    "documents": 89,
    "products": 40,
    "parties": 60,
    "origins": 30,
    "container_events": 250,
    "notifications": 300,
    "audit_logs": 600,
}

ENUMS = {
    "userrole": ["admin", "compliance", "logistics_agent", "buyer", "supplier", "viewer"],
    "shipmentstatus": [
        "DRAFT",
        "DOCS_PENDING",
        "DOCS_COMPLETE",
        "IN_TRANSIT",
        "ARRIVED",
        "CUSTOMS",
        "DELIVERED",
        "ARCHIVED",
    ],
    "documenttype": [
        "BILL_OF_LADING",
        "COMMERCIAL_INVOICE",
        "PACKING_LIST",
        "CERTIFICATE_OF_ORIGIN",
        "PHYTOSANITARY_CERTIFICATE",
        "FUMIGATION_CERTIFICATE",
        "INSURANCE_CERTIFICATE",
        "CONTRACT",
        "CUSTOMS_DECLARATION",
        "OTHER",
        "SANITARY_CERTIFICATE",
        "EUDR_DUE_DILIGENCE",
        "QUALITY_CERTIFICATE",
        "EU_TRACES_CERTIFICATE",
        "VETERINARY_HEALTH_CERTIFICATE",
        "EXPORT_DECLARATION",
    ],
    "documentstatus": ["UPLOADED", "PENDING_VALIDATION", "VALIDATED", "REJECTED", "EXPIRED"],
    "partytype": ["EXPORTER", "IMPORTER", "SUPPLIER", "BUYER", "SHIPPING_LINE", "CUSTOMS_AGENT", "OTHER"],
    "eventstatus": [
        "BOOKED",
        "GATE_IN",
        "LOADED",
        "DEPARTED",
        "IN_TRANSIT",
        "TRANSSHIPMENT",
        "ARRIVED",
        "DISCHARGED",
        "GATE_OUT",
        "DELIVERED",
        "OTHER",
    ],
    "risklevel": ["LOW", "MEDIUM", "HIGH", "CRITICAL"],
    "notificationtype": [
        "DOCUMENT_UPLOADED",
        "DOCUMENT_VALIDATED",
        "DOCUMENT_REJECTED",
        "SHIPMENT_CREATED",
        "SHIPMENT_STATUS_CHANGED",
        "CONTAINER_UPDATE",
        "COMPLIANCE_ALERT",
        "DEADLINE_REMINDER",
        "SYSTEM",
    ],
}
# (table, column) -> enum type name: what the tests check for full coverage.
ENUM_COLUMNS = {
    ("users", "role"): "userrole",
    ("shipments", "status"): "shipmentstatus",
    ("documents", "document_type"): "documenttype",
    ("documents", "status"): "documentstatus",
    ("parties", "party_type"): "partytype",
    ("container_events", "event_status"): "eventstatus",
    ("origins", "risk_level"): "risklevel",
    ("notifications", "notification_type"): "notificationtype",
}

# Word lists: bound as text[] parameters, picked by row number. Non-ASCII on purpose.
WORDS: dict[str, list[str]] = {
    "full_names": [
        "Adébáyọ̀ Okonkwo",
        "Jürgen Müller",
        "Kwame Mensah",
        "Aminata Touré",
        "Zoë Schäfer",
        "Chiamaka Nwosu",
        "Kofi Asante",
        "Léa Kouassi",
        "Björn Å. Lindqvist",
        "Ngozi Eze",
        "Yaw Boateng",
        "Hélène N'Guessan",
        "Oluwaseun Adeyemi",
        "Grzegorz Wójcik",
        "Fatoumata Diallo",
    ],
    "handles": [
        "adebayo.okonkwo",
        "juergen.mueller",
        "kwame.mensah",
        "aminata.toure",
        "zoe.schaefer",
        "chiamaka.nwosu",
        "kofi.asante",
        "lea.kouassi",
        "bjorn.lindqvist",
        "ngozi.eze",
        "yaw.boateng",
        "helene.nguessan",
        "oluwaseun.adeyemi",
        "grzegorz.wojcik",
        "fatoumata.diallo",
    ],
    "mail_domains": ["vibotaj.com", "vibotaj.de", "vibotaj.ng"],
    "container_prefixes": ["MSCU", "MAEU", "CMAU", "HLXU", "ONEU"],
    "carrier_codes": ["MSCU", "MAEU", "CMDU", "HLCU", "ONEY"],
    "carrier_names": [
        "MSC Mediterranean Shipping Company",
        "Maersk Line",
        "CMA CGM",
        "Hapag-Lloyd",
        "Ocean Network Express",
    ],
    "vessels": [
        "MSC Aurora",
        "Maersk Kinshasa",
        "CMA CGM Lomé",
        "Hapag Express Tema",
        "ONE Crystal",
        "Grande Dakar",
    ],
    "pol_codes": ["NGAPP", "CIABJ", "GHTEM", "CMDLA", "NGTIN"],
    "pol_names": ["Lagos – Apapa", "Abidjan – Port Autonome", "Tema", "Douala", "Lagos – Tin Can Island"],
    "pod_codes": ["DEHAM", "NLRTM", "BEANR", "FRLEH"],
    "pod_names": ["Hamburg – Waltershof", "Rotterdam – Maasvlakte", "Antwerpen", "Le Havre"],
    "incoterms": ["FOB", "CIF", "CFR", "EXW", "DAP", "FCA"],
    "exporters": [
        "VIBOTAJ Nigeria Ltd",
        "Société Ivoirienne de Transit",
        "Ghana Cocoa Board – Kumasi",
        "Coopérative Agricole de Soubré",
        "Ondo Cocoa Farmers Union",
    ],
    "importers": ["VIBOTAJ GmbH", "Hamburger Kakao-Kontor GmbH", "Rotterdam Cocoa Trading B.V.", "Brême Négoce SARL"],
    "issuers": [
        "Nigerian Export Promotion Council",
        "Ministère de l'Agriculture – Côte d'Ivoire",
        "Ghana Cocoa Board – Kumasi",
        "SGS Nigeria Ltd",
        "Bureau Veritas Côte d'Ivoire",
        "Zollamt Hamburg-Waltershof",
    ],
    "mime_types": ["application/pdf", "image/jpeg", "image/png", "application/pdf"],
    "rejection_notes": [
        "Stempel fehlt – bitte erneut hochladen",
        "Signature illisible, document à refaire",
        "Net weight differs from packing list",
        "Certificate expired before shipment date",
    ],
    "products": [
        "Cocoa beans",
        "Cashew nuts (raw)",
        "Sesame seeds",
        "Shea butter",
        "Hibiscus flowers (dried)",
        "Ginger (dried, split)",
        "Beurre de karité",
    ],
    "hs_codes": ["180100", "080131", "120740", "151590", "121190", "091011", "151590"],
    "packaging": ["Jute bags 64 kg", "Big bags 1 t", "Cartons 25 kg", "Sacs de jute 62,5 kg", "Bulk in container"],
    "quality_grades": ["Grade I", "Grade II", "Premium", "FAQ", "Qualité supérieure"],
    "farms": [
        "Coopérative Agricole de Soubré",
        "Ferme Kouassi – Daloa",
        "Ondo Cocoa Farmers Union",
        "Ashanti Smallholders – Kumasi",
        "Ijebu-Ode Cashew Estate",
        "Plantation Mbalmayo",
    ],
    "countries": ["Côte d'Ivoire", "Nigeria", "Ghana", "Cameroun", "Togo", "Nigeria"],
    "regions": ["Nawa", "Haut-Sassandra", "Ondo", "Ashanti", "Plateaux", "Ogun"],
    "suppliers": [
        "Ghana Cocoa Board – Kumasi",
        "Société Coopérative Ivoirienne du Cacao",
        "Olam Agri Nigeria",
        "Coopérative Agricole de Soubré",
        "Ondo Cocoa Farmers Union",
    ],
    "party_names": [
        "VIBOTAJ Nigeria Ltd",
        "VIBOTAJ GmbH",
        "Société Ivoirienne de Transit",
        "Hamburger Kakao-Kontor GmbH",
        "MSC Mediterranean Shipping Company",
        "Müller & Söhne Zollagentur",
        "Ghana Cocoa Board – Kumasi",
    ],
    "party_countries": ["Nigeria", "Deutschland", "Côte d'Ivoire", "Deutschland", "Schweiz", "Deutschland", "Ghana"],
    "event_codes": ["NGAPP", "CIABJ", "ESALG", "MAPTM", "DEHAM", "NLRTM", "GHTEM"],
    "event_places": [
        "Lagos – Apapa",
        "Abidjan – Port Autonome",
        "Algeciras",
        "Tanger Med",
        "Hamburg – Waltershof",
        "Rotterdam – Maasvlakte",
        "Tema",
    ],
    "event_sources": ["carrier_api", "manual", "edi_315", "jsoncargo"],
    "actions": ["create", "update", "delete", "login", "logout", "upload", "validate", "export"],
    "resource_types": ["shipment", "document", "user", "product", "origin", "party", "notification"],
    "ip_addresses": ["10.0.1.12", "197.210.54.3", "41.203.72.9", "2a02:8108:1240::17", "172.16.4.20"],
    "user_agents": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) Safari/605.1.15",
        "TraceHub-Mobile/1.2.4 (Android 14)",
        "python-requests/2.32",
    ],
    "notes": ["Überprüfung abgeschlossen – OK", "Vérifié par l'agent à Abidjan", "Checked against B/L", "—"],
}


class SeedError(RuntimeError):
    """The database cannot be seeded; the message says why and what to do."""


def _pick(words: str, index_sql: str) -> str:
    """SQL picking one entry of WORDS[words] (a bound text[]) by an integer expression."""
    return f"(%({words})s::text[])[(1 + mod({index_sql} + %(seed)s, {len(WORDS[words])}))::int]"


def _enum(type_name: str, index_sql: str) -> str:
    """SQL picking one value of an enum type by an integer expression (all values appear in turn)."""
    return (
        f"(%(enum_{type_name})s::text[])[(1 + mod({index_sql} + %(seed)s, {len(ENUMS[type_name])}))::int]::{type_name}"
    )


def _uid(kind: str, number_sql: str) -> str:
    """Deterministic uuid of row ``number`` of ``kind``: the same seed gives the same ids."""
    return f"md5(%(salt)s || ':{kind}:' || ({number_sql}))::uuid"


def _shipment_of(i: str) -> str:
    return _uid("shipment", f"1 + mod({i} - 1, %(n_shipments)s)")


def _user_of(i: str) -> str:
    return _uid("user", f"1 + mod({i} - 1, {USERS})")


# Row numbers are bigint: products like i * 104729 overflow int4 at large scales.
# Every timestamp hangs off this fixed instant, never now(): the data must be identical run after run.
T0 = "'2024-01-15 08:00:00+00'::timestamptz"

INSERTS: dict[str, str] = {
    "users": f"""
        INSERT INTO users (id, email, hashed_password, full_name, role, is_active, last_login, created_at, updated_at)
        SELECT {_uid("user", "i")},
               {_pick("handles", "i")} || '.' || i || '@' || {_pick("mail_domains", "i")},
               '$2b$12$' || substr(md5(%(salt)s || 'pw' || i) || md5(%(salt)s || 'pw2' || i), 1, 53),
               {_pick("full_names", "i")},
               {_enum("userrole", "i")},
               mod(i, 9) <> 0,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE {T0} + i * interval '9 days 3 hours' END,
               {T0} + i * interval '2 days 7 hours',
               {T0} + i * interval '2 days 7 hours' + interval '4 hours'
          FROM generate_series(1::bigint, {USERS}) AS g(i)
    """,
    "shipments": f"""
        INSERT INTO shipments (id, reference, container_number, bl_number, booking_ref, vessel_name, voyage_number,
                               carrier_code, carrier_name, pol_code, pol_name, pod_code, pod_name, etd, eta, atd, ata,
                               incoterms, status, exporter_name, importer_name, eudr_compliant, eudr_statement_id,
                               created_at, updated_at)
        SELECT {_uid("shipment", "i")},
               'VIB-' || (2024 + i / 20000) || '-' || lpad(i::text, 6, '0'),
               CASE WHEN st = 0 THEN NULL
                    ELSE {_pick("container_prefixes", "i")} || lpad(mod(i * 7919 + %(seed)s, 10000000)::text, 7, '0')
               END,
               CASE WHEN st < 2 THEN NULL ELSE 'BL' || lpad(mod(i * 104729, 100000000)::text, 9, '0') END,
               CASE WHEN st = 0 THEN NULL ELSE 'BK-' || lpad(mod(i * 613, 1000000)::text, 6, '0') END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("vessels", "i")} END,
               CASE WHEN st = 0 THEN NULL ELSE lpad(mod(i, 900)::text, 3, '0') || 'W' END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("carrier_codes", "i * 3")} END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("carrier_names", "i * 3")} END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("pol_codes", "i")} END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("pol_names", "i")} END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("pod_codes", "i * 5")} END,
               CASE WHEN st = 0 THEN NULL ELSE {_pick("pod_names", "i * 5")} END,
               CASE WHEN st = 0 THEN NULL ELSE created + interval '12 days' END,
               CASE WHEN st = 0 THEN NULL ELSE created + interval '33 days' END,
               CASE WHEN st >= 3 THEN created + interval '12 days 6 hours' END,
               CASE WHEN st >= 4 THEN created + interval '35 days 2 hours' END,
               CASE WHEN mod(i, 13) = 0 THEN NULL ELSE {_pick("incoterms", "i")} END,
               (%(enum_shipmentstatus)s::text[])[(1 + st)::int]::shipmentstatus,
               CASE WHEN mod(i, 11) = 0 THEN NULL ELSE {_pick("exporters", "i")} END,
               CASE WHEN mod(i, 17) = 0 THEN NULL ELSE {_pick("importers", "i")} END,
               mod(i, 3) <> 0,
               CASE WHEN mod(i, 3) <> 0 THEN 'EUDR-DDS-' || upper(substr(md5(%(salt)s || 'dds' || i), 1, 12)) END,
               created,
               created + interval '1 day'
          FROM generate_series(1::bigint, %(n_shipments)s) AS g(i),
               LATERAL (SELECT mod(i + %(seed)s, 8) AS st,
                               {T0} + i * interval '2 hours 17 minutes' AS created) AS x
    """,
    "documents": f"""
        INSERT INTO documents (id, shipment_id, name, document_type, status, file_name, file_path, file_size, mime_type,
                               document_date, expiry_date, issuer, reference_number, validation_notes, validated_by,
                               validated_at, uploaded_by, created_at, updated_at)
        SELECT {_uid("document", "i")},
               {_shipment_of("i")},
               initcap(replace(lower(dt::text), '_', ' ')) || ' – ' || i,
               dt,
               ds,
               CASE WHEN mod(i, 17) = 0 THEN NULL ELSE lower(dt::text) || '_' || i || '.pdf' END,
               CASE WHEN mod(i, 17) = 0 THEN NULL ELSE '/data/documents/' || mod(i, 100) || '/' || lower(dt::text)
                                                       || '_' || i || '.pdf' END,
               CASE WHEN mod(i, 17) = 0 THEN NULL ELSE 20000 + mod(i * 7919, 4000000) END,
               CASE WHEN mod(i, 17) = 0 THEN NULL ELSE {_pick("mime_types", "i")} END,
               CASE WHEN mod(i, 11) = 0 THEN NULL ELSE ({T0} + i * interval '37 minutes')::date END,
               CASE WHEN mod(i, 4) = 0 THEN NULL
                    ELSE ({T0} + i * interval '37 minutes' + interval '365 days')::date END,
               CASE WHEN mod(i, 7) = 0 THEN NULL ELSE {_pick("issuers", "i")} END,
               CASE WHEN mod(i, 9) = 0 THEN NULL ELSE 'REF-' || upper(substr(md5(%(salt)s || 'doc' || i), 1, 10)) END,
               CASE WHEN ds = 'REJECTED' THEN {_pick("rejection_notes", "i")} END,
               CASE WHEN ds IN ('VALIDATED', 'REJECTED') THEN {_user_of("i * 7")} END,
               CASE WHEN ds IN ('VALIDATED', 'REJECTED') THEN {T0} + i * interval '37 minutes' + interval '2 days' END,
               CASE WHEN mod(i, 19) = 0 THEN NULL ELSE {_user_of("i")} END,
               {T0} + i * interval '37 minutes',
               {T0} + i * interval '37 minutes' + interval '3 hours'
          FROM generate_series(1::bigint, %(n_documents)s) AS g(i),
               LATERAL (SELECT {_enum("documenttype", "i")} AS dt,
                               {_enum("documentstatus", "i * 3")} AS ds) AS x
    """,
    "products": f"""
        INSERT INTO products (id, shipment_id, name, description, hs_code, quantity_net_kg, quantity_gross_kg,
                              quantity_units, packaging, batch_number, lot_number, moisture_content, quality_grade,
                              created_at, updated_at)
        SELECT {_uid("product", "i")},
               {_shipment_of("i")},
               {_pick("products", "i")},
               CASE WHEN mod(i, 4) = 0 THEN NULL
                    ELSE {_pick("products", "i")} || ', récolte ' || (2023 + mod(i, 3)) || ' – sorted and cleaned' END,
               CASE WHEN mod(i, 11) = 0 THEN NULL ELSE {_pick("hs_codes", "i")} END,
               net,
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE round(net * 1.015, 3) END,
               CASE WHEN mod(i, 3) = 0 THEN NULL ELSE 100 + mod(i * 31, 300) END,
               CASE WHEN mod(i, 8) = 0 THEN NULL ELSE {_pick("packaging", "i")} END,
               CASE WHEN mod(i, 9) = 0 THEN NULL ELSE 'B' || lpad(mod(i * 37, 100000)::text, 5, '0') END,
               CASE WHEN mod(i, 6) = 0 THEN NULL ELSE 'LOT-' || (2023 + mod(i, 3)) || '-' || mod(i * 13, 1000) END,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE round((5 + mod(i * 17, 300) / 100.0)::numeric, 2) END,
               CASE WHEN mod(i, 7) = 0 THEN NULL ELSE {_pick("quality_grades", "i")} END,
               {T0} + i * interval '1 hour 3 minutes',
               {T0} + i * interval '1 hour 3 minutes' + interval '30 minutes'
          FROM generate_series(1::bigint, %(n_products)s) AS g(i),
               LATERAL (SELECT CASE WHEN mod(i, 19) = 0 THEN NULL
                                    ELSE round((8000 + mod(i * 7919, 17000) + mod(i, 1000) / 1000.0)::numeric, 3)
                               END AS net) AS x
    """,
    "parties": f"""
        INSERT INTO parties (id, shipment_id, name, party_type, email, phone, address, country, registration_number,
                             created_at, updated_at)
        SELECT {_uid("party", "i")},
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE {_shipment_of("i")} END,
               {_pick("party_names", "i")},
               {_enum("partytype", "i")},
               CASE WHEN mod(i, 4) = 0 THEN NULL ELSE 'contact' || i || '@example.org' END,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE '+234 80 ' || lpad(mod(i * 7919, 10000000)::text, 7, '0') END,
               CASE WHEN mod(i, 6) = 0 THEN NULL ELSE i || ' Rue du Commerce, ' || {_pick("party_countries", "i")} END,
               CASE WHEN mod(i, 9) = 0 THEN NULL ELSE {_pick("party_countries", "i")} END,
               CASE WHEN mod(i, 3) = 0 THEN NULL ELSE 'RC-' || lpad(mod(i * 613, 1000000)::text, 6, '0') END,
               {T0} + i * interval '53 minutes',
               {T0} + i * interval '53 minutes' + interval '1 day'
          FROM generate_series(1::bigint, %(n_parties)s) AS g(i)
    """,
    "origins": f"""
        INSERT INTO origins (id, shipment_id, farm_name, plot_identifier, latitude, longitude, country, region, address,
                             production_date, harvest_date, supplier_name, supplier_id, deforestation_free,
                             eudr_cutoff_compliant, risk_level, verified, verified_by, verified_at, verification_notes,
                             created_at, updated_at)
        SELECT {_uid("origin", "i")},
               {_shipment_of("i")},
               CASE WHEN mod(i, 8) = 0 THEN NULL ELSE {_pick("farms", "i")} END,
               CASE WHEN mod(i, 7) = 0 THEN NULL ELSE 'PLOT-' || lpad(mod(i * 131, 100000)::text, 5, '0') END,
               CASE WHEN mod(i, 9) = 0 THEN NULL ELSE round((4.5 + mod(i * 7919, 700000) / 100000.0)::numeric, 7) END,
               CASE WHEN mod(i, 9) = 0 THEN NULL ELSE round((-7.5 + mod(i * 104729, 1500000) / 100000.0)::numeric, 7)
               END,
               {_pick("countries", "i")},
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE {_pick("regions", "i")} END,
               CASE WHEN mod(i, 4) = 0 THEN NULL ELSE 'BP ' || mod(i, 900) || ', ' || {_pick("regions", "i")} END,
               CASE WHEN mod(i, 6) = 0 THEN NULL
                    ELSE ({T0} - interval '120 days' + i * interval '41 minutes')::date END,
               CASE WHEN mod(i, 7) = 0 THEN NULL ELSE ({T0} - interval '90 days' + i * interval '41 minutes')::date END,
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE {_pick("suppliers", "i")} END,
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE 'SUP-' || lpad(mod(i * 97, 10000)::text, 4, '0') END,
               CASE WHEN mod(i, 11) = 0 THEN NULL ELSE mod(i, 13) <> 0 END,
               CASE WHEN mod(i, 12) = 0 THEN NULL ELSE mod(i, 17) <> 0 END,
               CASE WHEN mod(i, 6) = 5 THEN NULL ELSE {_enum("risklevel", "i")} END,
               verified,
               CASE WHEN verified THEN {_user_of("i * 11")} END,
               CASE WHEN verified THEN {T0} + i * interval '41 minutes' + interval '5 days' END,
               CASE WHEN verified AND mod(i, 4) <> 0 THEN {_pick("notes", "i")} END,
               {T0} + i * interval '41 minutes',
               {T0} + i * interval '41 minutes' + interval '2 hours'
          FROM generate_series(1::bigint, %(n_origins)s) AS g(i),
               LATERAL (SELECT mod(i, 2) = 0 AS verified) AS x
    """,
    "container_events": f"""
        INSERT INTO container_events (id, shipment_id, event_status, event_time, location_code, location_name,
                                      vessel_name, voyage_number, description, source, raw_data, created_at)
        SELECT {_uid("event", "i")},
               {_shipment_of("i")},
               es,
               at,
               CASE WHEN mod(i, 12) = 0 THEN NULL ELSE {_pick("event_codes", "i")} END,
               CASE WHEN mod(i, 12) = 0 THEN NULL ELSE {_pick("event_places", "i")} END,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE {_pick("vessels", "i")} END,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE lpad(mod(i, 900)::text, 3, '0') || 'W' END,
               CASE WHEN mod(i, 3) = 0 THEN NULL
                    ELSE initcap(replace(lower(es::text), '_', ' ')) || ' at ' || {_pick("event_places", "i")} END,
               CASE WHEN mod(i, 20) = 0 THEN NULL ELSE {_pick("event_sources", "i")} END,
               CASE WHEN mod(i, 8) = 0 THEN NULL ELSE jsonb_build_object(
                   'event', es::text,
                   'eventTime', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'location', jsonb_build_object('unlocode', {_pick("event_codes", "i")},
                                                  'name', {_pick("event_places", "i")}),
                   'vessel', jsonb_build_object('name', {_pick("vessels", "i")}, 'imo', 9000000 + mod(i, 999999)),
                   'emptyIndicator', mod(i, 4) = 0,
                   'payloadVersion', 2,
                   'remarks', CASE WHEN mod(i, 3) = 0 THEN 'Zollbeschau – Container geöffnet' END) END,
               at + interval '5 minutes'
          FROM generate_series(1::bigint, %(n_container_events)s) AS g(i),
               LATERAL (SELECT {_enum("eventstatus", "i")} AS es,
                               {T0} + i * interval '11 minutes' AS at) AS x
    """,
    "notifications": f"""
        INSERT INTO notifications (id, user_id, notification_type, title, message, read, link, shipment_id, created_at)
        SELECT {_uid("notification", "i")},
               {_user_of("i * 7")},
               nt,
               initcap(replace(lower(nt::text), '_', ' ')),
               CASE WHEN mod(i, 2) = 0 THEN 'Dokument für Sendung ' || i || ' geprüft – bitte bestätigen.'
                    ELSE 'Shipment update #' || i || ': please review the latest changes.' END,
               mod(i, 3) = 0,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE '/shipments/' || {_shipment_of("i")} END,
               CASE WHEN mod(i, 5) = 0 THEN NULL ELSE {_shipment_of("i")} END,
               {T0} + i * interval '9 minutes'
          FROM generate_series(1::bigint, %(n_notifications)s) AS g(i),
               LATERAL (SELECT {_enum("notificationtype", "i")} AS nt) AS x
    """,
    "audit_logs": f"""
        INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, user_agent,
                                created_at)
        SELECT {_uid("audit", "i")},
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE {_user_of("i * 3")} END,
               {_pick("actions", "i")},
               rt,
               CASE WHEN mod(i, 15) = 0 THEN NULL ELSE {_uid("resource", "mod(i, 5000)")}::text END,
               CASE WHEN mod(i, 6) = 0 THEN NULL ELSE jsonb_build_object(
                   'request_id', substr(md5(%(salt)s || 'req' || i), 1, 16),
                   'changes', jsonb_build_object('status', jsonb_build_array('DRAFT', 'DOCS_PENDING')),
                   'note', {_pick("notes", "i")},
                   'system', mod(i, 10) = 0) END,
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE {_pick("ip_addresses", "i")} END,
               CASE WHEN mod(i, 10) = 0 THEN NULL ELSE {_pick("user_agents", "i")} END,
               {T0} + i * interval '4 minutes'
          FROM generate_series(1::bigint, %(n_audit_logs)s) AS g(i),
               LATERAL (SELECT {_pick("resource_types", "i")} AS rt) AS x
    """,
}


def planned_counts(scale: int = 1) -> dict[str, int]:
    """Rows per table that ``seed(scale=scale)`` creates."""
    return {"users": USERS} | {table: per * scale for table, per in PER_SCALE.items()}


def _parameters(scale: int, seed: int) -> dict[str, Any]:
    params: dict[str, Any] = {"seed": seed, "salt": f"tracehub-seed-{seed}"}
    params |= {f"n_{table}": count for table, count in planned_counts(scale).items()}
    params |= {f"enum_{name}": values for name, values in ENUMS.items()}
    params |= WORDS
    return params


def _refuse_unless_empty(conn: ConnInfo, cur: Any) -> None:
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY c.relname"
    )
    relations = [row[0] for row in cur.fetchall()]
    cur.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype = 'e' ORDER BY t.typname"
    )
    enum_types = [row[0] for row in cur.fetchall()]
    if not relations and not enum_types:
        return
    revision = ""
    if "alembic_version" in relations:
        cur.execute("SELECT string_agg(version_num, ', ') FROM alembic_version")
        revision = f", Alembic revision {cur.fetchone()[0] or 'none'}"
    shown = ", ".join((relations or enum_types)[:5])
    raise SeedError(
        f"Seeding {conn.describe()} refused: the database is not empty ({len(relations)} relations, "
        f"{len(enum_types)} enum types, e.g. {shown}{revision}). tools.seed only fills freshly created databases: "
        "create a new empty database, or drop and recreate this one."
    )


def _upgrade_to_seed_revision(conn: ConnInfo) -> None:
    from alembic.config import Config

    from alembic import command

    config = Config()
    # ConfigParser interpolates option values: a "%" in the path must be doubled.
    config.set_main_option("script_location", str(ALEMBIC_DIR).replace("%", "%%"))
    config.attributes["url"] = conn.sqlalchemy_url()
    command.upgrade(config, SEED_REVISION)


def seed(conn: ConnInfo, scale: int = 1, seed: int = 8) -> dict[str, int]:
    """Bring an empty database to revision 002 and fill the nine tenant tables; return rows per table.

    :param scale: multiplies the per-shipment tables (1 = the production figures of the sprint plan).
    :param seed: changes names, choices and ids; the same seed always yields the same data.
    """
    if scale < 1:
        raise SeedError(f"Seeding {conn.describe()} refused: scale must be 1 or more, not {scale}.")
    conn = conn.with_application_name("tracehub.deploy seed")
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            _refuse_unless_empty(conn, cur)
        connection.rollback()
        _upgrade_to_seed_revision(conn)
        params = _parameters(scale, seed)
        with connection.cursor() as cur:
            for table in TENANT_TABLES:
                cur.execute(INSERTS[table], params)
        connection.commit()
        connection.autocommit = True
        counts: dict[str, int] = {}
        with connection.cursor() as cur:
            for table in TENANT_TABLES:
                cur.execute(f"ANALYZE {table}")
                cur.execute(f"SELECT count(*) FROM {table}")
                counts[table] = int(cur.fetchone()[0])
        return counts
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: seed one empty database, print row counts and the elapsed time."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.seed",
        description="Fill an EMPTY database with realistic TraceHub data at Alembic revision 002. "
        "The password is read from the environment variable PGPASSWORD, never from the command line.",
    )
    parser.add_argument("--host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    parser.add_argument("--user", default=os.environ.get("PGUSER", "tracehub"))
    parser.add_argument("--dbname", default=os.environ.get("PGDATABASE", "tracehub"))
    parser.add_argument("--sslmode", default="prefer", help="libpq sslmode (default: prefer)")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="multiply the per-shipment tables (1 = production figures; 1796 gives about 2.5 million rows)",
    )
    parser.add_argument("--seed", type=int, default=8, help="same seed, same data (default: 8)")
    args = parser.parse_args(argv)

    conn = ConnInfo(
        host=args.host,
        port=args.port,
        user=args.user,
        password=os.environ.get("PGPASSWORD"),
        dbname=args.dbname,
        sslmode=args.sslmode,
    )
    started = time.monotonic()
    try:
        counts = seed(conn, scale=args.scale, seed=args.seed)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    width = max(len(table) for table in counts)
    for table, count in counts.items():
        print(f"{table:<{width}}  {count:>10,}")
    print(f"{'total':<{width}}  {sum(counts.values()):>10,}")
    print(
        f"Seeded {conn.describe()} at revision {SEED_REVISION} (scale {args.scale}, seed {args.seed}) "
        f"in {elapsed:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
