"""Programs behind the process runtime's built-in images (kubelite/agnhost, kubelite/pause)."""
