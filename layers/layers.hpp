// tapegrad — include this one header to get the module system and every layer.
#pragma once

#include "framework/init.hpp"
#include "framework/module.hpp"
#include "layers/activation.hpp"
#include "layers/attention.hpp"
#include "layers/dropout.hpp"
#include "layers/embedding.hpp"
#include "layers/gru.hpp"
#include "layers/layer_norm.hpp"
#include "layers/linear.hpp"
#include "layers/loss.hpp"
#include "layers/lstm.hpp"
#include "layers/lstm_cell.hpp"
#include "layers/rnn.hpp"
#include "layers/rnn_cell.hpp"
#include "layers/sequential.hpp"
#include "layers/transformer.hpp"
