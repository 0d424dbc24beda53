"""Operating the hub: the operations page, the API services report their audit records to, the hub wiring."""
