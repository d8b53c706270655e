"""Publishing: the staged site folder, the single file, figures, GitHub Pages."""
