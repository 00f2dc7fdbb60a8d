// Arduino CLI sketch entry: the code is in main.cpp (setup() and loop()) and the portable core
// in ../core (passed with --library). See esp32/README.md.
