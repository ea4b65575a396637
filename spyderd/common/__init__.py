"""What every stage and both programs share: config, access rules, time parsing."""
