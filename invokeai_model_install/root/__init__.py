"""The root on disk: its layout, the registry (models.yaml), manifests, the starter catalogue, atomic writes."""
