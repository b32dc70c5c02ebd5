"""The citizen registry: reading a raw snapshot, preparing it once into hash shards."""
