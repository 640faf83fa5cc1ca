"""The thin Dagster shell: assets, checks, resources, IO manager, partitions, jobs, schedules."""
