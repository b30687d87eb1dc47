"""The call lifecycle: identify, rate, route, hold, link, bill; its caches and the slice keeper."""
