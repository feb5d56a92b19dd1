"""The static HTML report of a run folder: data export, thumbnails, the page (`emocurate report`)."""
