// Factory for inference engines backed by OpenCV DNN's ONNX importer (CPU).
#pragma once

#include <memory>

#include "agent/engine/inference_engine.h"

namespace edgefleet::agent {

// The first call also starts OpenCV's worker threads, which inherit the calling thread's CPU
// priority: make the factory on a thread at the priority inference should have.
std::unique_ptr<EngineFactory> MakeOpenCvEngineFactory();

}  // namespace edgefleet::agent
