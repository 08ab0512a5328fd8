// tapegrad — include this one header to get the whole framework.
#pragma once

#include "framework/custom_op.hpp"
#include "framework/data.hpp"
#include "framework/error.hpp"
#include "framework/gradcheck.hpp"
#include "framework/gradcheck_module.hpp"
#include "framework/lr_scheduler.hpp"
#include "framework/ops.hpp"
#include "framework/optim.hpp"
#include "framework/print.hpp"
#include "framework/random.hpp"
#include "framework/tape.hpp"
#include "framework/tensor.hpp"
