"""Developer and demo tooling of the checkout (local servers, data generator, demo summary)."""
