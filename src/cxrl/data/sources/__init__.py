"""One reader per dataset; each exposes ``load(root: Path, **options) -> DataFrame``."""
