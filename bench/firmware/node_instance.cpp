// Only the default node instance, so `size` on this object shows its static RAM (.bss).
#include "node.h"
fw::Node<> g_fw_node_default;
