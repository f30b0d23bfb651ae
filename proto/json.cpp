#include "proto/json.hpp"
// Implemented with the protocol codec (issue 3).
