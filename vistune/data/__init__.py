"""Images in: sources, the manifest, decoding, duplicates, prepared arrays, preprocessing."""
