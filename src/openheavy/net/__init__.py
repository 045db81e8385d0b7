"""Network access for web research: the SSRF guard and the page reader."""
