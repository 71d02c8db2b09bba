"""The Dash app: pages hold layout, callbacks hold wiring, controllers hold the logic; never imports torch."""
