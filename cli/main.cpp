// edgefleetctl: the operator's command-line client for the edgefleet admin and inference APIs.
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) { return edgefleet::cli::Run(argc, argv, std::cout, std::cerr); }
