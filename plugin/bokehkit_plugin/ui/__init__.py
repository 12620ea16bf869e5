"""The Qt panel shared by the Krita docker and the dialog the engine shows for GIMP.

One code base for PyQt6 (Krita 6, the engine) and PyQt5 (Krita 5), through `qt.py`.
"""
