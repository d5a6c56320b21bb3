"""The phone suite: tasks on the virtual phone's bundled apps (envs/virtual_phone/apps), one
module per app. ``device.py`` holds what they share: finding elements and reading and writing app
state through adb."""
