"""Where a course's files are: course.yaml, its folders, its settings."""
