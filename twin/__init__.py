"""The living city: the ``City`` facade analysts import and the ``twin`` CLI."""
