"""The project's Definitions with the automation and training pieces merged in where not wired yet."""

import dagster as dg


def full_definitions() -> dg.Definitions:
    from mmoral_pipeline.definitions import defs
    from mmoral_pipeline.defs.automation import automation_jobs, automation_schedules, automation_sensors

    repo = defs.get_repository_def()
    parts = []
    if not repo.has_job("regenerate_dataset"):
        parts.append(dg.Definitions(jobs=automation_jobs, schedules=automation_schedules, sensors=automation_sensors))
    if dg.AssetKey("sft_model") not in repo.asset_graph.get_all_asset_keys():
        from mmoral_pipeline.defs.training import training_defs

        parts.append(training_defs)
    return dg.Definitions.merge(defs, *parts) if parts else defs
