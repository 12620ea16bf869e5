"""Files in and out: images (readers and writers), colour encodings, EXIF orientation,
maps (depth, masks) and the plug-ins' raw buffers."""
