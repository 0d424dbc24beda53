"""Image admission: decide, before anything is created, whether an image may run."""
