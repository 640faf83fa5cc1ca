"""Annotations -> per-tooth attributes (MMOral post-processing rules) -> location captions.

Entry points:
- `build.build_image_attributes(images, annotations, settings) -> AttributesResult` (documents +
  one outcome per raw annotation); the rules themselves are in `rules.py`, the knobs in
  `settings.AttributeSettings`.
- `stage.build_attribute_tables(...)`: the same in bounded memory, as the three tables.
- `caption.render_caption(doc)`, `caption.captions_frame(image_attributes)`, `caption.CAPTION_VERSION`.
- `mmoral_io.write_mmoral_json(docs, folder)`: the MMOral per-image JSON files.
"""
