"""Data tools: volume and image IO (:mod:`.io`), phantoms (:mod:`.phantom`) and the MR artefacts
and lesion edits of :mod:`.distortions`."""
