"""The native runner: the Compose stack's services as host processes under supervisord."""
