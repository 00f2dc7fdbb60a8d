// Channel settings of the demo device profiles (docs/CONTRACT.md "Demo devices").
#pragma once
#include <cstddef>

#include "node.h"

namespace fw {

/// A device profile: its readings and channel settings.
struct Profile {
  const char* name;               ///< profile / default device id ("femto-b1_1", ...)
  const ChannelConfig* channels;  ///< one per sensor the device reports
  size_t n_channels;
};

/// Profile by name ("nab-machine", "femto-b1_1", "occupancy-office"), or nullptr.
const Profile* find_profile(const char* name);
/// All profiles; *n gets their count.
const Profile* profiles(size_t* n);

}  // namespace fw
