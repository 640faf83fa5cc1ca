"""LLM clients (OpenAI-compatible and offline), response cache, prompts, builders and validators.

Entry points:
- `pipeline.generate(images, backend, settings, run_id) -> GenerationOutput`: one partition's
  reports, vqa_items, dialogues, attribute_tasks and rejected rows (all `rows.InstructionItem`).
- `backends.CachedBackend(inner, cache.ResponseCache(path))`: any `types.ChatBackend` behind the
  persistent SQLite cache; `offline.OfflineBackend`, `openai_backend.OpenAIBackend`.
- `location_vqa.build_rule_items(facts, rng)` / `verify_rule_item(item, facts)` /
  `count_options(n, rng, cap)`: rule-based location and counting questions (no LLM).
- `facts.facts_of(ImageAttributes) -> Facts`; `validators.*`: pure checks returning `Verdict`s.
- `prompts.render(template_id, **vars)`, `prompts.prompt_version(template_id)`.
- `local_server.LocalChatServer(responder)`: an OpenAI-compatible test endpoint on 127.0.0.1.
"""
