"""wfe_core: protocols, models, builder and executor of the wfe workflow engine."""
