"""Tests of sweeper.dashboard: extraction, figures, report, CLI, live page, browser, speed."""
