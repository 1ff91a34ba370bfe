"""ISNet: image-level and semantic-level context for semantic segmentation."""
