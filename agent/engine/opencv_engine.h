// Factory for inference engines backed by OpenCV DNN's ONNX importer (CPU).
#pragma once

#include <memory>

#include "agent/engine/inference_engine.h"

namespace edgefleet::agent {

std::unique_ptr<EngineFactory> MakeOpenCvEngineFactory();

}  // namespace edgefleet::agent
