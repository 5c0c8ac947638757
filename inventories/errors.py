"""The one exception the inventory raises for anything a person has to fix."""


class InventoryError(Exception):
    """A problem with the settings, the AWS access or the instances found.

    The message is a single line meant for a person: it names the setting or the AWS call
    involved and says what to change. `inventories/aws.py` prints it instead of a traceback.
    """
