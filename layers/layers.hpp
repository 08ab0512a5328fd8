// tapegrad — include this one header to get the module system and every layer.
#pragma once

#include "framework/init.hpp"
#include "framework/module.hpp"
#include "layers/embedding.hpp"
#include "layers/gru.hpp"
#include "layers/linear.hpp"
#include "layers/loss.hpp"
#include "layers/lstm_cell.hpp"
#include "layers/rnn_cell.hpp"
