"""Deploy tasks: one concern per module, each with one public `@deploy` function.

Every task reads its settings from `tasks.settings.for_host(host)`, never from `host.data` directly.
"""
