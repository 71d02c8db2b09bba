"""Callbacks: wiring between components, controllers and the model worker; one module per page."""
