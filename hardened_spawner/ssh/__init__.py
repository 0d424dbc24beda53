"""SSH into one's own server: logical targets, the gateway service and its hub wiring."""
