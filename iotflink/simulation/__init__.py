"""Load, data and faults: virtual ESP32 nodes, dataset and transaction replayers, fault
injection, the end-to-end demo and the worked scenarios."""
