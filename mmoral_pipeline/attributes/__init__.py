"""Annotations -> per-tooth attributes (MMOral post-processing rules) -> location captions.

Entry points: `build.build_image_attributes`, `caption.render_caption`, `frames.attribute_frames`,
`mmoral_io.write_mmoral_json`, `settings.AttributeSettings`.
"""
