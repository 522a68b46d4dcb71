"""Network analysis over the layers: road graph, emergency routing, isochrones, signal timing."""
