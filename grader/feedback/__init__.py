"""What a person reads: the student's report, the class overview, class statistics."""
