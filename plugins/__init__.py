"""CV-learning methods, one module (or package) each, registered under the ``cvplug.methods`` entry points."""
