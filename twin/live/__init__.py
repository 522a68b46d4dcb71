"""The live twin: sensor feeds in, live state out (SensorThings API v1.1 and its MQTT extension)."""
