"""High dynamic range from exposure brackets: grouping, alignment, merging."""
