"""Reports: Markdown and self-contained HTML pages (inline SVG, every model text escaped)."""
