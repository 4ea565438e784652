"""Images, masks and fonts: reading and writing files, rasterising and growing masks, colours."""
