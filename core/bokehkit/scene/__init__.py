"""What the photo shows and how the lens sees it: depth (maps, phone depth, depth models),
the subject, focus, refine brushes, the lens (optics) and its aperture."""
