"""Pure domain core: teeth numbering, finding taxonomy, geometry and records. No Dagster here."""
