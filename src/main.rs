fn main() -> std::process::ExitCode {
    jitgate::cli::main()
}
