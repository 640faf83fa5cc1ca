"""MMOral-Bench-style evaluation: benchmark items, TSV import/export, model runners, answer
extraction, judges (offline and LLM), scoring and the results table/plots. Pure core: no Dagster."""
